"""Runtime shared by every service: settings, Kafka connection, embedded broker, clock, storage."""
