"""Evaluation of the synthesized speech: objective metrics per system (evaluate) and the report page (report)."""
