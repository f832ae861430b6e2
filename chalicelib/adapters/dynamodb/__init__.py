"""The DynamoDB adapters (boto3), one module per concern."""
