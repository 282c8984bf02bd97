"""Catalogs from where shops keep them: photo URLs and buckets, Shopify exports and webhooks."""
