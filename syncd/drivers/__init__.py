"""The edges of syncd: each driver talks to one kind of store and maps its errors into syncd's."""
