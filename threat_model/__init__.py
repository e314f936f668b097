"""threat_model: see DESIGN.md; built by a later issue."""
