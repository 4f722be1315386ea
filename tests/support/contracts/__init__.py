"""Each provider kind's wire data for the adapter contract tests (test_adapter_contract.py)."""
