"""Smaller, faster models: knowledge distillation and architecture search, with side-by-side figures."""
