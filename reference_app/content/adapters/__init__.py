"""The content service's adapters: the code that talks to a real server."""
