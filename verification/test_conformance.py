"""The conformance catalogue as pytest items: one ``test_check`` item per planned check instance.

Collected by ``pytest --pyargs verification --dropblock-impl SPEC`` (and by ``dropblock-verify run``, which
drives the same items); :mod:`verification.plugin` plans the items and records their results.
"""


def test_check(dropblock_item, dropblock_run):
    """One check instance of one implementation: passes when the check passes, skips when it does not apply."""
    dropblock_run(dropblock_item)
