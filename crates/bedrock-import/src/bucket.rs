//! The target bucket: exists, is in the import's region, or gets created on request.

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

use crate::Error;

/// Makes sure `bucket` exists in `region`. With `create`, a missing bucket is created; without it, a missing bucket
/// is [`Error::NoSuchBucket`]. A bucket in another region is [`Error::BucketInOtherRegion`].
#[tracing::instrument(skip(s3))]
pub async fn ensure_bucket(s3: &Client, bucket: &str, region: &str, create: bool) -> Result<(), Error> {
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(out) => {
            if let Some(r) = out.bucket_region()
                && r != region
            {
                return Err(Error::BucketInOtherRegion {
                    bucket: bucket.to_string(),
                    bucket_region: r.to_string(),
                    region: region.to_string(),
                });
            }
            Ok(())
        }
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            let header_region = e
                .raw_response()
                .and_then(|r| r.headers().get("x-amz-bucket-region"))
                .map(str::to_string);
            match status {
                Some(301) | Some(400) if header_region.as_deref().is_some_and(|r| r != region) => {
                    Err(Error::BucketInOtherRegion {
                        bucket: bucket.to_string(),
                        // Checked just above that it is Some.
                        bucket_region: header_region.unwrap_or_default(),
                        region: region.to_string(),
                    })
                }
                Some(404) if create => create_bucket(s3, bucket, region).await,
                Some(404) => Err(Error::NoSuchBucket {
                    bucket: bucket.to_string(),
                }),
                _ => Err(Error::s3("HeadBucket", bucket, "", e)),
            }
        }
    }
}

async fn create_bucket(s3: &Client, bucket: &str, region: &str) -> Result<(), Error> {
    let mut call = s3.create_bucket().bucket(bucket);
    // us-east-1 is the one region that must not be named as a location constraint.
    if region != "us-east-1" {
        call = call.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    match call.send().await {
        Ok(_) => {
            tracing::info!(bucket, region, "bucket created");
            Ok(())
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => Ok(()),
        Err(e) => Err(Error::s3("CreateBucket", bucket, "", e)),
    }
}
