"""Modbus drivers: a pure register codec and read planner, and a TCP driver on pymodbus."""
