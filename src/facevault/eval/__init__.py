"""Evaluation protocols: LFW View-2 pairs and open-set 1:N identification."""
