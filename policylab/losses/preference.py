"""GRPO and DPO losses for language models (filled in by the LLM work)."""

__all__: list[str] = []
