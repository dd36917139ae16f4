"""The stages of the flow, one module each, olmoflow/stages/{section}.py with `run(ctx) -> metrics`. What a stage is
(its inputs, output kind, headline, config sections, GPUs, scale-out) is its entry in olmoflow/registry.py."""
