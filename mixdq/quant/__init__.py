"""The switchable simulation: layers that fake-quantize their weights and inputs at whatever bits
they are set to, calibration of activation ranges, allocations and what they cost in memory, and
the verbs (`prepare`, `quantize_`, `apply_allocation`, `set_layer_bits`, `restore`, ...)."""
