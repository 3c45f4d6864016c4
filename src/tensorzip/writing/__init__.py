"""tensorzip.writing"""
