"""Kafka: the only module that imports confluent-kafka. Client factories, topic catalogue and admin, DLQ routing."""
