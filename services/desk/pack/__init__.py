"""The assurance pack, the weekly digest and the capacity gauges.

The evidence an inspector asks for, in one document per period and area, from the read
side's data: timeliness per rule with its trend, the inspection's findings one by one,
capacity, data quality, access, and the provenance of the figures (docs/contract.md
section 6, "The assurance pack").
"""
