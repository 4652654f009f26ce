"""Server-rendered pages (the browser issue grows these)."""
