"""The model: the handle over a Hugging Face causal LM (nnsight), architecture adapters, head sets, errors."""
