"""Triton backend: the runner contract over a model served by a Triton Inference Server.

    Segmenter.open("triton://host:8000/fcn8s")         # HTTP (tritonclient.http)
    Segmenter.open("triton+grpc://host:8001/fcn8s/2")  # gRPC, model version 2

The model's config is read from the server: input dims, outputs, max batch size and the toolkit
metadata that ``fcn-triton`` puts into ``parameters`` (classes, palette, mean, channel order), so
the Segmenter preprocesses on the client exactly as for a local file. Every call has a timeout
(``timeout_s``): a server that is gone or stuck is an FCNError, never a hang. Shapes the server
would refuse (larger than its ``fcn_serve.max_*`` limits, outside a plan's profiles) are refused
here before anything is sent.
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from fcn_deploy.errors import FCNError, require_positive_number
from fcn_deploy.meta import ONNX_PREFIX, ModelMeta
from fcn_deploy.runtime.base import Runner, TensorInfo

SCHEMES = ("triton", "triton+http", "triton+grpc")
_DTYPES = {"FP32": np.float32, "FP16": np.float16, "UINT8": np.uint8, "INT32": np.int32,
           "INT64": np.int64}
_URL = re.compile(r"^(?P<scheme>[a-z+]+)://(?P<host>[^/]+)/(?P<model>[^/]+)(?:/(?P<version>\d+))?/?$")


@dataclass(frozen=True)
class TritonURL:
    """``triton[+http|+grpc]://host:port/model[/version]`` taken apart."""

    protocol: str
    host: str
    model: str
    version: str = ""

    @classmethod
    def parse(cls, text: str) -> "TritonURL":
        match = _URL.match(str(text))
        if not match or match["scheme"] not in SCHEMES:
            raise FCNError(f"{text!r} is not a Triton model URL; expected "
                           "triton://host:port/model[/version] (HTTP) or "
                           "triton+grpc://host:port/model[/version]")
        protocol = "grpc" if match["scheme"] == "triton+grpc" else "http"
        return cls(protocol, match["host"], match["model"], match["version"] or "")

    def __str__(self) -> str:
        scheme = "triton+grpc" if self.protocol == "grpc" else "triton"
        tail = f"/{self.version}" if self.version else ""
        return f"{scheme}://{self.host}/{self.model}{tail}"


class TritonRunner(Runner):
    """A model on a Triton server behind the runner contract.

    Options: ``timeout_s`` (every connection, request and reply; default 30 s).
    Thread-safety: tritonclient's clients must stay in the thread that made them (the HTTP one
    runs on gevent), so each thread gets its own client and ``infer`` runs concurrently
    (``concurrent = True``): N threads sharing one runner send N requests at once, which the
    server's dynamic batcher may merge.
    """

    backend = "triton"
    concurrent = True

    def __init__(self, location: str, *, timeout_s: float = 30.0,
                 device: str | None = None) -> None:
        super().__init__()
        if device is not None:
            raise FCNError(f"--device {device} does not apply to a served model: the server's "
                           "instance_group decides where it runs (fcn-triton --instance-kind)")
        timeout_s = require_positive_number(timeout_s, what="timeout_s")
        self.url = TritonURL.parse(str(location))
        self.path = str(self.url)
        self.timeout_s = float(timeout_s)
        self._local = threading.local()
        self._clients: list[Any] = []
        self._clients_lock = threading.Lock()
        try:
            self._setup(self._call("read the model config of", self._get_config))
        except BaseException:
            self.close()
            raise

    # -- server calls ----------------------------------------------------------------------------
    @property
    def _client(self):
        """This thread's client (made on first use)."""
        client = getattr(self._local, "client", None)
        if client is None:
            if self._closed:
                raise FCNError(f"triton runner for {self.url} is closed")
            client = self._local.client = self._connect()
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _connect(self):
        try:
            if self.url.protocol == "grpc":
                import tritonclient.grpc as client
                return client.InferenceServerClient(self.url.host)
            import tritonclient.http as client
            return client.InferenceServerClient(self.url.host, connection_timeout=self.timeout_s,
                                                network_timeout=self.timeout_s)
        except ImportError as exc:
            raise FCNError(f"the triton backend needs tritonclient ({exc}); install it with "
                           "pip install 'fcn-deploy[serve]'") from None
        except Exception as exc:  # bad host syntax and the like
            raise FCNError(f"cannot make a Triton client for {self.url}: {exc}") from None

    def _timeout_kw(self) -> dict[str, Any]:
        return {"client_timeout": self.timeout_s} if self.url.protocol == "grpc" else {}

    def _get_config(self) -> dict[str, Any]:
        if self.url.protocol == "grpc":
            reply = self._client.get_model_config(self.url.model, self.url.version, as_json=True,
                                                  **self._timeout_kw())
            return reply.get("config", reply)
        return self._client.get_model_config(self.url.model, self.url.version)

    def _call(self, what: str, fn, *args: Any, **kwargs: Any):
        """Run a client call; any failure becomes an FCNError naming the server and the model."""
        try:
            return fn(*args, **kwargs)
        except FCNError:
            raise
        except Exception as exc:  # tritonclient, gevent, socket and grpc errors alike
            text = str(exc).strip() or type(exc).__name__
            if isinstance(exc, (TimeoutError, OSError)) or "timed out" in text.lower() \
                    or "Deadline" in text:
                hint = (f" (no reply within {self.timeout_s:g} s or no server listening; is "
                        "tritonserver running there?)")
            else:
                hint = ""
            raise FCNError(f"Triton server {self.url.host} could not {what} model "
                           f"{self.url.model!r}: {text}{hint}") from None

    # -- metadata ----------------------------------------------------------------------------------
    def _setup(self, config: Mapping[str, Any]) -> None:
        params = {k: (v or {}).get("string_value", "")
                  for k, v in (config.get("parameters") or {}).items()}
        try:
            self.meta = ModelMeta.from_onnx_props(
                {k: v for k, v in params.items() if k.startswith(ONNX_PREFIX)})
        except FCNError as exc:
            raise FCNError(f"{self.url}: {exc}; write the repository with fcn-triton so the "
                           "model's config carries the classes and the mean") from None
        self.max_batch_size = int(config.get("max_batch_size", 0) or 0)
        batch = (None,) if self.max_batch_size > 0 else ()
        self.inputs = [self._info(t, batch) for t in config.get("input", [])]
        self.outputs = [self._info(t, batch) for t in config.get("output", [])]
        expected = self.meta.input_names
        if sorted(t.name for t in self.inputs) != sorted(expected):
            raise FCNError(f"{self.url}: inputs are {[t.name for t in self.inputs]}; expected "
                           + (f"the inputs {', '.join(map(repr, expected))} its metadata lists"
                              if len(expected) > 1 else "one input 'image' [N, 3, H, W]"))
        self.max_hw = tuple(int(params[k]) if params.get(k) else None
                            for k in ("fcn_serve.max_height", "fcn_serve.max_width"))
        self.profiles = []
        if params.get("fcn_serve.profiles"):
            # lazy: fcn_deploy.engine imports onnx; a Triton client needs it only here
            from fcn_deploy.engine.profiles import Profile

            self.profiles = [Profile.from_dict(p)
                             for p in json.loads(params["fcn_serve.profiles"])]

    @staticmethod
    def _info(tensor: Mapping[str, Any], batch: tuple) -> TensorInfo:
        kind = str(tensor.get("data_type", "")).removeprefix("TYPE_")
        if kind not in _DTYPES:
            raise FCNError(f"tensor {tensor.get('name')!r} has type {kind}, which the runtime "
                           "does not handle")
        dims = tuple(None if int(d) < 0 else int(d) for d in tensor.get("dims", []))
        return TensorInfo(name=tensor["name"], shape=batch + dims, dtype=np.dtype(_DTYPES[kind]))

    def batch_limit(self, shape) -> int | None:
        return self.max_batch_size or None

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = super().check_feeds(feeds)
        shape = feeds[self.inputs[0].name].shape
        height, width = shape[-2:]
        max_h, max_w = self.max_hw
        if (max_h and height > max_h) or (max_w and width > max_w):
            raise FCNError(f"{self.url}: an image of {height}x{width} is larger than the server "
                           f"takes ({max_h or 'any'}x{max_w or 'any'}); resize or tile it, or "
                           "serve a model built for larger images")
        if self.max_batch_size and shape[0] > self.max_batch_size:
            raise FCNError(f"{self.url}: a batch of {shape[0]} is larger than the server's "
                           f"max_batch_size {self.max_batch_size}")
        if self.profiles:
            # lazy: fcn_deploy.engine imports onnx (see above)
            from fcn_deploy.engine.profiles import select_profile

            select_profile(self.profiles, shape, what=str(self.url))
        return feeds

    # -- inference ---------------------------------------------------------------------------------
    def _infer(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        if self.url.protocol == "grpc":
            import tritonclient.grpc as client
        else:
            import tritonclient.http as client
        requests = []
        for name, data in feeds.items():  # every input by its name (NYUDv2's image + hha)
            request = client.InferInput(name, list(data.shape), "FP32")
            request.set_data_from_numpy(data.astype(np.float32, copy=False))
            requests.append(request)
        wanted = [client.InferRequestedOutput(name) for name in outputs]
        result = self._call("run", self._client.infer, self.url.model, requests,
                            model_version=self.url.version, outputs=wanted, **self._timeout_kw())
        return {name: np.array(result.as_numpy(name)) for name in outputs}

    def statistics(self) -> dict[str, Any]:
        """The server's inference statistics of this model (batch sizes it executed, counts)."""
        if self.url.protocol == "grpc":
            return self._call("read the statistics of", self._client.get_inference_statistics,
                              self.url.model, self.url.version, as_json=True,
                              **self._timeout_kw())
        return self._call("read the statistics of", self._client.get_inference_statistics,
                          self.url.model, self.url.version)

    def close(self) -> None:
        super().close()
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception:  # a server that is gone, or another thread's gevent hub
                pass
