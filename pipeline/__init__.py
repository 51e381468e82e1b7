"""The Kubeflow pipeline: wiring (``amnet_pipeline``), compile / submit / schedule (``cli``) and the
local runner (``local_run``). Nothing here computes anything; the stages live in :mod:`amnet`."""
