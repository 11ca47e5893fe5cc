"""Streamlit-side helpers shared by the pages (the engine in `beatsync` knows nothing of Streamlit)."""
