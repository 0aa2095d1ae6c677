"""The asyncio shell: performs the core's actions with google-genai and feeds back what happened."""
