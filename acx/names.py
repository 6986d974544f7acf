"""The names that the config schema allows and the builders map to objects, declared once (below every
layer: the schema imports no torch, the networks import no pydantic)."""

ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "elu": "ELU", "gelu": "GELU", "silu": "SiLU"}  # -> torch.nn classes
INITS = ("default", "orthogonal", "kaiming_normal")
VALUE_LOSSES = ("mse", "huber", "smooth_l1")
OBJECTIVES = ("best_eval_return", "final_eval_return", "eval_return_auc")
