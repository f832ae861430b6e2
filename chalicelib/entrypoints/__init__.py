"""Entry points: the HTTP blueprints, the schedule, the operator CLI."""
