//! Bucket- and service-level requests: GetBucketInfo, DescribeRegions.
