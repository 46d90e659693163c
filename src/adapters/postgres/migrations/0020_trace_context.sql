-- Tracing (README "Tracing"): the trace context of the submit that created
-- the task (the propagator's fields, W3C traceparent and tracestate, as a JSON
-- object), so every attempt's spans join that trace, retries and
-- re-dispatches included; NULL when the submit was not traced. A nullable
-- column without a default: added at once, no table rewrite.
ALTER TABLE tasks ADD COLUMN trace_context text;
