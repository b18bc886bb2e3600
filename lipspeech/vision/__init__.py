"""Face and mouth geometry: landmark models and helpers."""
