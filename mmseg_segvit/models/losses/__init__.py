"""Losses (and the training accuracy)."""
from .accuracy import label_accuracy
from .atm_loss import ATMLoss

__all__ = ['ATMLoss', 'label_accuracy']
