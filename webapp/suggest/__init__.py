"""Live suggestions while a shopper types: learned query completions and item previews."""
