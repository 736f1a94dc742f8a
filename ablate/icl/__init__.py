"""In-context learning: few-shot tasks and word lists, per-item FC / PD / LR metrics, loss reduction."""
