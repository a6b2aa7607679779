"""Worked examples that are not part of nnbasics' op set: ``custom_op``, sigmoid written the other
modern way (``torch.library.custom_op``), beside ``nnbasics.ops.Sigmoid`` (``docs/checker.md``)."""
