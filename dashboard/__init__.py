"""The Streamlit dashboard over run folders; reads runs only through `engine.runs`."""
