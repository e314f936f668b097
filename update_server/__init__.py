"""update_server: see DESIGN.md; built by a later issue."""
