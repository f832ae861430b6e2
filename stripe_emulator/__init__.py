"""A stateful emulator of the part of Stripe's REST API this project uses.

For local work and tests only: it runs on loopback and the official
stripe-python client talks to it through `STRIPE_API_BASE`.
"""

from stripe_emulator.serving import EmulatorServer, start_in_thread

__all__ = ["EmulatorServer", "start_in_thread"]
