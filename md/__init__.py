"""scalebridge.md"""
