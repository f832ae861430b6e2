"""Adapters: DynamoDB, Stripe, S3, the clock, and in-memory ones for every port."""
