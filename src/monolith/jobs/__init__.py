"""Work that runs behind real-time traffic: async jobs (`worker`) and HTTP batches (`batches`) on spare engine
capacity from the shared store, batch lines (`lines`) and the file transform that answers them (`transform`),
callbacks and where they may go (`callbacks`, `destinations`), and jobs, files and batches as clients see
them (`wire`)."""
