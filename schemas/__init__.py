"""Event contracts v1 of Fengqiao: one module per topic family, each with its topic names."""
