"""NPU targets: profiles (what each NPU accepts, with sources), an offline check, the rewrites
that make common models pass, and the target.npu stage. Heavy imports stay inside functions."""
