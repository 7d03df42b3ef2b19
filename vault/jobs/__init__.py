"""Clean-room jobs (placeholder of the outputs branch; the jobs branch owns this file)."""

__all__: list[str] = []
