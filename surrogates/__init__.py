"""scalebridge.surrogates"""
