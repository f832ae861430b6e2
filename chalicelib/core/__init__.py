"""The pure core: money, buckets, pricing, attribution, planning. No boto3, stripe or logger."""
