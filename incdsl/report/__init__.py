"""Reports over costs: tables, paper tables (--against), counting conventions, diffs."""
