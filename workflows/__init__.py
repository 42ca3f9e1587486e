"""scalebridge.workflows"""
