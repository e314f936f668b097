"""device_agent: see DESIGN.md; built by a later issue."""
