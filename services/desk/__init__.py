"""The desk: everything people read, from one read side in PostgreSQL.

A stateless service (any number of pods, no session affinity). A projector (a consumer
group of the desk) writes what the stream services publish (alert and child views,
obligation outcomes, notification events, audit records) into PostgreSQL, with its
consumer offsets in the same transaction; the console, the alert API, the child
chronology, the timeliness report and the audit search read from there. Acknowledging
and resolving are commands published to Kafka for notify to apply.
"""
