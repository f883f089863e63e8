"""The library the stages call: params, images, archives, sample data, TFRecords and the input pipeline."""
