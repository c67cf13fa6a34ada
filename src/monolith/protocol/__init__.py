"""Wire types (msgspec Structs), one module per API, below serving: the HTTP routes, async jobs and batch
all speak them, and nothing here imports from api/."""
