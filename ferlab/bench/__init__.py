"""Benchmarks that write JSON: `train` (a recipe against the clock, GFLOP/s vs matmul peak),
`infer` (classification faces/s, PyTorch and ONNX Runtime), `use` (photo latency and video
frames/s end to end), `kit` (what they share) and `config` (the verbs' options, torch-free).
Kept apart from the stages: nothing in the core imports this package."""
