"""The Streamlit layer: session-state keys, cached reads and widgets (the only streamlit importer)."""
