"""Bridges to other formats and libraries; nothing here is imported by the core."""
