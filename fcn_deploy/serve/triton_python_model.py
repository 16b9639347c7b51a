"""Triton Python-backend model that runs an fcn-deploy ONNX graph with ONNX Runtime on the CPU.

fcn-triton --backend python copies this file to ``<repo>/<name>/<version>/model.py`` next to
``model.onnx``. It runs inside tritonserver's Python-backend stub (its own interpreter), so it
imports nothing from fcn_deploy: only numpy, onnxruntime and the backend's
``triton_python_backend_utils``. Requests that the dynamic batcher hands over together and that
share one image size are concatenated into one ONNX Runtime call: the batch the server formed is
the batch the network runs. Every input the config lists is fed by its name (a fusion net's
``image`` and ``hha`` / ``depth``) and every output it lists is returned (a multi-head net's
``labels_<head>`` / ``scores_<head>``).
"""
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

_LIMIT_KEYS = ("fcn_serve.max_height", "fcn_serve.max_width")


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        threads = int(params.get("fcn_serve.intra_op_threads", "0") or 0)
        if threads > 0:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.session = ort.InferenceSession(os.path.join(version_dir, "model.onnx"),
                                            sess_options=options,
                                            providers=["CPUExecutionProvider"])
        self.outputs = [o["name"] for o in config["output"]]
        # every input by name with its channels (dims are [C, H, W], or [-1, C, H, W] when
        # Triton does not batch): a fusion net's image and hha/depth share N, H and W
        self.inputs = [(i["name"], int(i["dims"][-3])) for i in config["input"]]
        self.max_hw = tuple(int(params[k]) if params.get(k) else 0 for k in _LIMIT_KEYS)

    def _check(self, feeds):
        for name, channels in self.inputs:
            array = feeds[name]
            if array.ndim != 4 or array.shape[1] != channels:
                return (f"input {name!r} has shape {list(array.shape)}; expected "
                        f"[N, {channels}, H, W]")
        first = feeds[self.inputs[0][0]]
        for name, _ in self.inputs[1:]:
            other = feeds[name]
            if (other.shape[0],) + other.shape[2:] != (first.shape[0],) + first.shape[2:]:
                return (f"input {name!r} has shape {list(other.shape)}; the inputs of one "
                        f"request must share N, H and W with {self.inputs[0][0]!r} "
                        f"{list(first.shape)}")
        height, width = first.shape[2:]
        max_h, max_w = self.max_hw
        if (max_h and height > max_h) or (max_w and width > max_w):
            return (f"image of {height}x{width} is larger than this model serves "
                    f"({max_h or 'any'}x{max_w or 'any'})")
        return None

    def execute(self, requests):
        responses = [None] * len(requests)
        groups = {}
        for i, request in enumerate(requests):
            feeds = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                     for name, _ in self.inputs}
            problem = self._check(feeds)
            if problem is not None:
                responses[i] = pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(problem))
                continue
            key = tuple(feeds[name].shape[1:] for name, _ in self.inputs)
            groups.setdefault(key, []).append((i, feeds))
        for members in groups.values():
            batch = {name: np.concatenate([feeds[name] for _, feeds in members],
                                          axis=0).astype(np.float32)
                     for name, _ in self.inputs}
            try:
                values = self.session.run(self.outputs, batch)
            except Exception as exc:  # ONNX Runtime's own error types
                for i, _ in members:
                    responses[i] = pb_utils.InferenceResponse(
                        output_tensors=[], error=pb_utils.TritonError(f"ONNX Runtime: {exc}"))
                continue
            start = 0
            for i, feeds in members:
                stop = start + feeds[self.inputs[0][0]].shape[0]
                tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value[start:stop]))
                           for name, value in zip(self.outputs, values)]
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                start = stop
        return responses

    def finalize(self):
        self.session = None
