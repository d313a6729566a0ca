"""The shared platform layer every MBT service is built on.

Server factory with interceptors (auth, request id, error -> status), health, reflection and
graceful shutdown (`grpc_server`); typed domain errors (`errors`); settings from the
environment (`settings`); the database engine, migrations and unit of work (`db`); the NATS
connection and streams (`bus`); the transactional outbox and its relay (`outbox`).
"""
