"""The paper-timing harness and investigations; imports fcn_deploy, nothing imports it."""
