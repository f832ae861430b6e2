"""Usage billing on the edge: everything the Lambda functions import lives here."""
